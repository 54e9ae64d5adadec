//! Request signing (PROTOCOL §2).
