//! Differential fuzzing of the XML reader against roxmltree, a strict XML 1.0 parser: the
//! oracle of `crates/mq-proto/tests/xml_wellformed.rs` (`tests/xml_oracle`, included here by
//! path) runs the document through every public entry point that reads XML —
//! `server::parse_request` (publish, ack) and the client's publish, consume, ack and error
//! decoders.
//!
//! Input: the document. Any input must give no disagreement: no entry point accepts a
//! document the reference rejects (documents that break only Namespaces in XML excepted),
//! and where both accept, the decoded texts are the reference's.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/mq-proto/tests/xml_oracle/mod.rs"]
#[allow(dead_code)]
mod xml_oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = xml_oracle::check(data) {
        panic!("{e}\ndocument: {:?}", String::from_utf8_lossy(data));
    }
});
