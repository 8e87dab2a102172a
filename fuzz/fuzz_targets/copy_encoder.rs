//! Rows through the binary COPY encoder, read back by an independent reader
//! (`reposmith_postgres::fuzzing::copy_encoder`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reposmith_postgres::fuzzing::copy_encoder(data));
