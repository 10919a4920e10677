// STUB
use crate::cluster::NodeAddr;
use redis_protocol::resp2::types::OwnedFrame;
pub struct ShardInfo { pub slots: Vec<(u16, u16)>, pub master: NodeAddr, pub replicas: Vec<NodeAddr> }
pub struct Topology { pub shards: Vec<ShardInfo> }
impl Topology { pub fn uncovered(&self) -> Vec<(u16, u16)> { todo!() } pub fn covers_all(&self) -> bool { todo!() } }
#[derive(Debug)]
pub struct TopologyError;
impl std::fmt::Display for TopologyError { fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { todo!() } }
pub fn parse_cluster_shards(_f: &OwnedFrame, _q: &NodeAddr) -> Result<Topology, TopologyError> { todo!() }
pub fn parse_cluster_slots(_f: &OwnedFrame, _q: &NodeAddr) -> Result<Topology, TopologyError> { todo!() }
