//! Topic and consumer-group administration over RocketMQ's remoting protocol (to be written).
