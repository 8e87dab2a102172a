//! The RAG service's binary: settings from the environment, the store
//! connected, `migrations/rag` applied, the embedding model loaded, the
//! workers started, HTTP served until SIGINT or SIGTERM, then a graceful
//! shutdown (requests in flight finish, running jobs get
//! `RAG_SHUTDOWN_GRACE`, connections close).
//!
//! `DATABASE_URL`, `MONGODB_URL` and `REDIS_URL` are all required; the
//! service's own variables are listed on
//! [`Config`](reposmith_example_rag::config::Config).

use std::process::ExitCode;
use std::sync::Arc;

use reposmith::{Embedder, Store};
use reposmith_example_rag::app::Service;
use reposmith_example_rag::cli::{self, Failure};
use reposmith_example_rag::config::Config;
use reposmith_example_rag::migrations;
use tokio::net::TcpListener;

fn main() -> ExitCode {
    // Before any thread starts: it may re-execute the process (see its docs).
    cli::tune_allocator("rag-service");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    cli::run("rag-service", run())
}

async fn run() -> Result<(), Failure> {
    let config = Config::from_env()?;
    let store_config = reposmith::Config::from_env()?;
    let pg = store_config
        .postgres
        .clone()
        .ok_or("DATABASE_URL is not set")?;
    if store_config.mongo.is_none() || store_config.redis.is_none() {
        return Err("MONGODB_URL and REDIS_URL must both be set".into());
    }
    let store = Store::connect(store_config).await?;
    let applied = migrations::apply(&config.migrations_dir, &pg, &store).await?;
    tracing::info!(postgres = ?applied.postgres, mongo = ?applied.mongo, "migrations applied");
    let embedder = load_embedder(&config)?;
    let service = Service::start(store.clone(), embedder, config.clone()).await?;
    let listener = TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    let served = service.serve(listener, shutdown_signal()).await;
    store.close().await;
    Ok(served?)
}

/// The embedding model: the one place the service's model is chosen.
/// all-MiniLM-L6-v2 (384 dimensions, as `Chunk::embedding` declares),
/// loaded from `RAG_MODEL_DIR` (`cargo xtask rag fetch` puts it in
/// `target/rag/model`); an application swaps in its own [`Embedder`] here.
fn load_embedder(config: &Config) -> Result<Arc<dyn Embedder>, Failure> {
    let model = reposmith_example_rag::embed::MiniLm::load(&config.model_dir)?;
    Ok(Arc::new(model))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "no Ctrl-C handler");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "no SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
