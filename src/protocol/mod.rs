//! RESP on the wire: the proxy's own frame scanner, the replies it writes itself, and
//! the redirects it reads from nodes. Pure: bytes in, values out.

pub mod redirect;
pub mod reply;
pub mod scan;

impl crate::command::Args for scan::Request {
    fn argc(&self) -> usize {
        scan::Request::argc(self)
    }

    fn arg(&self, i: usize) -> &[u8] {
        scan::Request::arg(self, i)
    }
}
