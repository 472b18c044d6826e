//! One module per subcommand.

pub mod bench;
pub mod bench_command;
pub mod bench_prefix;
pub mod bench_restart;
pub mod jobs;
pub mod journal;
pub mod keygen;
pub mod results;
pub mod run;
pub mod scheduler;
pub mod slurm;
pub mod submit;
pub mod validate;
pub mod worker;
