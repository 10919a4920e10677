//! The cluster as the proxy sees it: node addresses, topology parsing (pure), the
//! published slot table and the task that keeps it fresh.

pub mod addr;
pub mod refresh;
pub mod table;
pub mod topology;

pub use addr::NodeAddr;
