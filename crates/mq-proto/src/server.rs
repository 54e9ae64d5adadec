//! Server side: request parsing, authentication and response encoding.
