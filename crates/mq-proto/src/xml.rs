//! XML reading and writing helpers shared by the client and server codecs.
