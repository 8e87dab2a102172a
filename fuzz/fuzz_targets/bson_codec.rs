//! Stored documents read back, and values written then read
//! (`reposmith_mongo::fuzzing::bson_codec`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reposmith_mongo::fuzzing::bson_codec(data));
