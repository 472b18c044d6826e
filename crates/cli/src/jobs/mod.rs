//! What the job subcommands (`validate`, `run`, `submit`, `jobs`, `status`,
//! `cancel`, `results`) share: loading job files, turning a
//! [`quarry_job::JobSpec`] into a submitted quarry job, following its
//! progress, and rendering its result table.

pub mod connect;
pub mod load;
pub mod progress;
pub mod result;
pub mod submit;
pub mod view;
