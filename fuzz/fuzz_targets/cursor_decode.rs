//! A client-supplied cursor: never a panic, a typed error or values that
//! re-encode and decode equal (`reposmith_core::fuzzing::cursor_decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reposmith_core::fuzzing::cursor_decode(data));
