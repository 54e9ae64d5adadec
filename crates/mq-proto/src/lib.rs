//! Sans-IO wire layer of the ApsaraMQ for RocketMQ HTTP protocol (`x-mq-version: 2015-06-06`).
//!
//! `mq-proto` opens no sockets, reads no clock and spawns nothing: time is always an argument.
//! It holds the domain types, request signing, the XML documents of the protocol with the
//! encoder and decoder of each side by side ([`wire`]), the HTTP requests and response
//! decoding of clients ([`client`]), request parsing and HTTP responses of servers
//! ([`server`]), and the pure state machines ([`machine`]: retry, consumer loop, transaction checker) that the
//! runtime crates drive.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, clippy::missing_errors_doc)]

pub mod client;
pub mod machine;
pub mod server;
pub mod sign;
pub mod trace;
pub mod wire;

mod message;
mod ops;
mod properties;
mod text;
mod types;
mod xml;

pub use client::Endpoint;
pub use message::{
    MAX_BODY_LEN, MAX_SCHEDULE_AHEAD_MS, MAX_SPECIAL_BODY_LEN, Message, MessageError, TopicMessage,
    body_md5,
};
pub use ops::{AckKind, ConsumeKind, ErrorCode, HandleFailure, attribute_failures};
pub use properties::{
    FORBIDDEN_CHARS, KEY_KEYS, KEY_SHARDING_KEY, KEY_START_DELIVER_TIME, KEY_TRANS_CHECK_IMMUNITY,
    MAX_PROPERTIES_LEN, Properties, PropertyError, SYSTEM_KEYS, validate_pair,
};
pub use sign::Credentials;
pub use text::{BodyView, MessageBody, Text, TextView};
pub use types::{
    BatchSize, GroupId, HandleBatch, InstanceId, InvalidValue, MAX_RECEIPT_HANDLE_LEN,
    MAX_SUBSCRIPTION_NAMES_LEN, MAX_TAG_LEN, MessageId, NamesTooLong, ReceiptHandle, Tag,
    TagFilter, TopicName, TransCheckImmunity, WaitSeconds, check_subscription_names,
};
pub use wire::consume::{Entry, PoisonMessage, PoisonReason};
pub use xml::is_xml_char;
