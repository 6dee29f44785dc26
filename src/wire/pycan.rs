//! python-can udp_multicast msgpack format (placeholder until its module lands).
