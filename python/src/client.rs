//! The client as Python sees it: a `quarry_client::Client` and the job its
//! tasks go to.

use crate::future::{Decode, NativeFuture};
use crate::prefix::NativePrefixMap;
use crate::runtime::{self, runtime};
use crate::{to_py_error, QuarryError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use quarry_client::{Client, ClientOptions, Job, JobOptions, MapPrefixOptions};
use quarry_proto::{DataRef, TaskSpec};
use quarry_worker::{PythonCall, PYTHON_FUNCTION};
use serde_bytes::ByteBuf;
use std::time::Duration;

/// The client's versions, which every Python call carries so that a worker
/// can refuse a mismatch in one clear line: (Python `major.minor`,
/// cloudpickle, quarry).
type Versions = (String, String, String);

/// One Python call: the pickle and the references it holds (each a
/// MessagePack `DataRef`, from [`NativeClient::put`]).
type Call = (Vec<u8>, Vec<Vec<u8>>);

/// A connection to a scheduler (`quarry.Client` wraps it). Every task it
/// submits goes to one job of its own, whose output prefix (under the
/// staging store, when there is one) takes results too large to travel
/// inline.
#[pyclass(frozen, module = "quarry._native")]
pub struct NativeClient {
    client: Client,
    job: Job,
}

fn decode_ref(bytes: &[u8]) -> PyResult<DataRef> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| QuarryError::new_err(format!("not a quarry reference: {e}")))
}

fn python_call(versions: &Versions, shard: bool, pickle: Vec<u8>) -> PythonCall {
    PythonCall {
        python: versions.0.clone(),
        cloudpickle: versions.1.clone(),
        quarry: versions.2.clone(),
        shard,
        pickle,
    }
}

impl NativeClient {
    fn submit_specs(&self, specs: Vec<TaskSpec>, decode: Decode) -> PyResult<Vec<NativeFuture>> {
        let _runtime = runtime().enter();
        let futures = self.job.submit::<ByteBuf>(specs).map_err(to_py_error)?;
        Ok(futures
            .into_iter()
            .map(|future| NativeFuture::spawn(&self.client, future, decode))
            .collect())
    }

    /// Builds a task per argument: each over the inline cap is put into the
    /// staging store and passed by reference (one wait for all of them).
    fn tasks<A: serde::Serialize + Send + Sync>(
        &self,
        py: Python<'_>,
        function: &str,
        args: Vec<A>,
    ) -> PyResult<Vec<TaskSpec>> {
        let client = self.client.clone();
        runtime::block_on(py, async move {
            let mut specs = Vec::with_capacity(args.len());
            for arg in &args {
                specs.push(client.task(function, arg).await?);
            }
            Ok(specs)
        })?
        .map_err(to_py_error)
    }
}

#[pymethods]
impl NativeClient {
    /// Connects to the scheduler at `address` (`tcp://HOST:PORT`). Values
    /// over the inline cap are put under `staging` (a store URL or local
    /// path; default `QUARRY_STAGING`).
    #[new]
    #[pyo3(signature = (address, staging=None, timeout=10.0))]
    fn new(
        py: Python<'_>,
        address: String,
        staging: Option<String>,
        timeout: f64,
    ) -> PyResult<NativeClient> {
        let mut options = ClientOptions::new(address);
        options.handshake_timeout = Duration::from_secs_f64(timeout.max(0.1));
        if staging.is_some() {
            options.staging = staging;
        }
        let output = options.staging.as_ref().map(|staging| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!(
                "{}/results/{}-{nanos}",
                staging.trim_end_matches('/'),
                std::process::id()
            )
        });
        let client = runtime::block_on(py, Client::connect_with(options))?.map_err(to_py_error)?;
        let job = {
            let _runtime = runtime().enter();
            client
                .open_job(JobOptions {
                    name: "python client".into(),
                    output,
                    ..JobOptions::default()
                })
                .map_err(to_py_error)?
        };
        Ok(NativeClient { client, job })
    }

    /// The scheduler's address.
    #[getter]
    fn address(&self) -> &str {
        self.client.address()
    }

    /// The staging store's URL, if one is configured.
    #[getter]
    fn output(&self) -> Option<String> {
        self.job.spec().output.clone()
    }

    /// Submits Python calls (each a pickle and the references it holds),
    /// one task each; a call over the inline cap is put into the staging
    /// store and passed by reference.
    #[pyo3(signature = (calls, versions, retries=0, priority=0))]
    fn submit_python(
        &self,
        py: Python<'_>,
        calls: Vec<Call>,
        versions: Versions,
        retries: u32,
        priority: i32,
    ) -> PyResult<Vec<NativeFuture>> {
        let mut inputs = Vec::with_capacity(calls.len());
        let mut python_calls = Vec::with_capacity(calls.len());
        for (pickle, refs) in calls {
            inputs.push(
                refs.iter()
                    .map(|r| decode_ref(r))
                    .collect::<PyResult<Vec<_>>>()?,
            );
            python_calls.push(python_call(&versions, false, pickle));
        }
        let mut specs = self.tasks(py, PYTHON_FUNCTION, python_calls)?;
        for (spec, inputs) in specs.iter_mut().zip(inputs) {
            spec.inputs = inputs;
            spec.retries = retries;
            spec.priority = priority;
        }
        self.submit_specs(specs, Decode::Pickle)
    }

    /// Submits calls of the Rust function `function` registered in the
    /// workers, one task per argument (each JSON text).
    #[pyo3(signature = (function, args, retries=0, priority=0))]
    fn submit_named(
        &self,
        py: Python<'_>,
        function: String,
        args: Vec<String>,
        retries: u32,
        priority: i32,
    ) -> PyResult<Vec<NativeFuture>> {
        let values = args
            .iter()
            .map(|json| {
                serde_json::from_str::<serde_json::Value>(json)
                    .map_err(|e| QuarryError::new_err(format!("bad JSON argument: {e}")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut specs = self.tasks(py, &function, values)?;
        for spec in &mut specs {
            spec.retries = retries;
            spec.priority = priority;
        }
        self.submit_specs(specs, Decode::Json)
    }

    /// Puts bytes into the staging store (content-addressed: the same bytes
    /// are stored once) and returns the reference (MessagePack), its URL and
    /// its size.
    fn put<'py>(
        &self,
        py: Python<'py>,
        data: Vec<u8>,
    ) -> PyResult<(Bound<'py, PyBytes>, String, u64)> {
        let client = self.client.clone();
        let data_ref = runtime::block_on(py, async move { client.put_bytes(data).await })?
            .map_err(to_py_error)?;
        let encoded = rmp_serde::to_vec_named(&data_ref)
            .map_err(|e| QuarryError::new_err(format!("cannot encode the reference: {e}")))?;
        Ok((PyBytes::new(py, &encoded), data_ref.url, data_ref.size))
    }

    /// Runs the pickled function once per object under `url` (or per
    /// line-aligned chunk of at least `chunk_size` bytes), given the local
    /// path of its shard; `broadcast` names the references the pickle holds.
    #[pyo3(signature = (pickle, versions, url, broadcast, chunk_size=None, glob=None, retries=0))]
    #[allow(clippy::too_many_arguments)]
    fn map_prefix(
        &self,
        py: Python<'_>,
        pickle: Vec<u8>,
        versions: Versions,
        url: String,
        broadcast: Vec<(String, Vec<u8>)>,
        chunk_size: Option<u64>,
        glob: Option<String>,
        retries: u32,
    ) -> PyResult<NativePrefixMap> {
        let call = python_call(&versions, true, pickle);
        let broadcast = broadcast
            .iter()
            .map(|(name, r)| Ok((name.clone(), decode_ref(r)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let options = MapPrefixOptions {
            glob,
            chunk_size,
            broadcast,
            output: self.job.spec().output.clone(),
            retries,
            ..MapPrefixOptions::default()
        }
        .with_args(&call)
        .map_err(to_py_error)?;
        let _ = py;
        let _runtime = runtime().enter();
        let map = self
            .client
            .map_prefix::<ByteBuf>(PYTHON_FUNCTION, &url, options)
            .map_err(to_py_error)?;
        Ok(NativePrefixMap::new(map))
    }

    /// The names of the workers connected to the scheduler.
    fn workers(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let client = self.client.clone();
        let workers =
            runtime::block_on(py, async move { client.workers().await })?.map_err(to_py_error)?;
        Ok(workers.into_iter().map(|w| w.name).collect())
    }

    /// Seals the client's job: no more tasks come (the scheduler finishes
    /// it once its tasks have).
    fn close(&self) -> PyResult<()> {
        let _runtime = runtime().enter();
        self.job.seal().map(drop).map_err(to_py_error)
    }
}
