// STUB
use bytes::{Bytes, BytesMut};
#[derive(Clone, Debug)]
pub struct Limits { pub max_bulk_len: usize }
impl Default for Limits { fn default() -> Self { todo!() } }
#[derive(Debug)]
pub struct ProtocolError;
impl std::fmt::Display for ProtocolError { fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { todo!() } }
pub struct Request;
impl Request { pub fn raw(&self) -> &Bytes { todo!() } pub fn argc(&self) -> usize { todo!() } pub fn arg(&self, _i: usize) -> &[u8] { todo!() } pub fn into_raw(self) -> Bytes { todo!() } }
pub struct RequestScanner;
impl RequestScanner { pub fn new(_l: Limits) -> Self { todo!() } pub fn next_request(&mut self, _b: &mut BytesMut) -> Result<Option<Request>, ProtocolError> { todo!() } pub fn bytes_needed(&self, _b: &BytesMut) -> usize { todo!() } }
pub struct ReplyScanner;
impl ReplyScanner { pub fn new(_l: Limits) -> Self { todo!() } pub fn scan(&mut self, _b: &[u8]) -> Result<Option<usize>, ProtocolError> { todo!() } pub fn bytes_needed(&self, _n: usize) -> usize { todo!() } }
