//! One module per subcommand.

pub mod bench;
pub mod keygen;
pub mod scheduler;
pub mod worker;
