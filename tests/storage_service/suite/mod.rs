//! The reference Storage Service over real HTTP, on the store of the enclosing module: every
//! operation of `openapi/storage-service.yaml` and every error status it documents. Well-formed calls go
//! through the generated progenitor client, so that the client and the server are checked
//! against each other; malformed requests, which that client cannot even build, go through
//! plain `reqwest`.

use super::{Guard, Store, open_store};

mod books;
mod cancel;
mod errors;
mod failures;
mod listing;
mod orders;
mod problems;
mod service;
mod status;
mod stock;
