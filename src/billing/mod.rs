//! Use cases, written once and called from the API, the pages and the commands.

pub mod entitlement;
pub mod users;
