//! RESP on the wire: the proxy's own frame scanner, the replies it writes itself, and
//! the redirects it reads from nodes. Pure: bytes in, values out.

pub mod redirect;
pub mod reply;
pub mod scan;
