//! The cluster as the proxy sees it: node addresses, topology parsing (pure), the
//! merge of several nodes' views into one topology (pure) and the slot table built
//! from it (pure). The task that keeps the table fresh sits above,
//! in the top-level `refresh` module, beside the server.

pub mod addr;
pub mod table;
pub mod topology;
pub mod views;

pub use addr::NodeAddr;
