// STUB
use crate::cluster::NodeAddr;
use crate::slot::Slot;
pub enum Redirect { Moved { slot: Slot, addr: NodeAddr }, Ask { slot: Slot, addr: NodeAddr }, TryAgain, ClusterDown }
pub fn parse_redirect(_r: &[u8], _f: &NodeAddr) -> Option<Redirect> { todo!() }
