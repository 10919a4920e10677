// STUB until the command table lands.
pub trait Args { fn argc(&self) -> usize; fn arg(&self, i: usize) -> &[u8]; }
pub struct CommandSpec { pub name: &'static str }
pub enum Local { Ping, Echo, Quit, Select, Hello, Auth, ClientSetName, ClientGetName, ClientId, ClientSetInfo, ClientInfo, ClientList, ClientNoEvict, ClientNoTouch, Info, ReadOnly, ReadWrite, Reset }
pub enum FanOut { DbSize }
pub enum Route { Local(Local), Slot, AnyNode, FanOut(FanOut), Blocking, Transaction, PubSub, Refused(&'static str) }
pub struct KeyIndices;
impl KeyIndices { pub fn iter(&self) -> impl Iterator<Item = usize> + '_ { 0..0 } }
pub struct Classified { pub spec: &'static CommandSpec, pub route: Route, pub keys: KeyIndices }
pub struct CommandError;
impl CommandError { pub fn message(&self) -> String { todo!() } }
pub fn classify(_args: &(impl Args + ?Sized)) -> Result<Classified, CommandError> { todo!() }
