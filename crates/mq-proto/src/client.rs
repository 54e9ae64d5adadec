//! Client side: request builders and response decoders.
