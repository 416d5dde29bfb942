//! Secret files in the deploy repository: git-crypt's formats (`gitcrypt`) and the directory of
//! encrypted secrets (`store`). Below both `deploy` (which reads them for Docker secrets) and
//! `secrets` (the commands and the page that write them).

mod gitcrypt;
mod store;

pub use gitcrypt::{GitCryptError, Key as GitCryptKey};
pub use store::{SecretsDir, SecretsError, random_value};
