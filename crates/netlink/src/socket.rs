//! The netlink socket: send a request, collect its ACK or dump, check sequence numbers.
