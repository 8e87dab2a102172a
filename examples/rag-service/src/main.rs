//! The RAG service's binary.

fn main() -> std::process::ExitCode {
    eprintln!("rag-service: under construction (see examples/rag-service/README.md)");
    std::process::ExitCode::FAILURE
}
