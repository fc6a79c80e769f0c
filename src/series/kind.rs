//! The two labels every edge carries besides its services: the connection
//! type and which side, if any, was inferred.

/// The `connection_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ConnType {
    /// A plain request; the label is absent (empty) in the output.
    #[default]
    Plain = 0,
    MessagingSystem = 1,
    Database = 2,
    VirtualNode = 3,
}

impl ConnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnType::Plain => "",
            ConnType::MessagingSystem => "messaging_system",
            ConnType::Database => "database",
            ConnType::VirtualNode => "virtual_node",
        }
    }
}

/// The `virtual_node` label: which side was inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Virtual {
    #[default]
    None = 0,
    Client = 1,
    Server = 2,
}

impl Virtual {
    pub fn as_str(self) -> &'static str {
        match self {
            Virtual::None => "",
            Virtual::Client => "client",
            Virtual::Server => "server",
        }
    }
}
