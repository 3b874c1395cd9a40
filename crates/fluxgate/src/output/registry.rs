//! The output kinds, keyed by their TOML name (`[[outputs.<kind>]]`).
//!
//! Each kind is one module: its config section implements [`OutputSpec`], which builds the
//! running [`Output`] (encoder, request builder and service, as Vector's sinks are made), and
//! one line in [`KINDS`] says where its sections are in a [`Config`]. The gateway, reload and
//! `check` only ever see `dyn OutputSpec` and `dyn Output`: a new kind touches its module and
//! this table, not every `match` in the program.

use std::{any::Any, fmt, sync::Arc, time::Duration};

use super::Output;
use crate::{
    config::{BufferSettings, Config},
    metrics::Metrics,
};

/// One output section of the config, of any kind.
pub trait OutputSpec: fmt::Debug + Send + Sync + 'static {
    /// The TOML kind name: `influxdb` for `[[outputs.influxdb]]`.
    fn kind(&self) -> &'static str;

    fn name(&self) -> &str;

    /// Its queue: `memory` or `disk`, and the disk buffer's bounds.
    fn buffer_settings(&self) -> BufferSettings;

    /// Builds the output (not started yet).
    fn build(&self, metrics: &Metrics, log_interval: Duration) -> Result<Arc<dyn Output>, String>;

    fn as_any(&self) -> &dyn Any;

    /// Whether `other` is the same section (same kind, same settings): a reload keeps such
    /// an output running.
    fn same(&self, other: &dyn OutputSpec) -> bool;
}

/// [`OutputSpec::same`] for a section type that compares with `PartialEq`.
pub(crate) fn same_as<T: PartialEq + 'static>(me: &T, other: &dyn OutputSpec) -> bool {
    other.as_any().downcast_ref::<T>() == Some(me)
}

/// A registered output kind: its TOML name and where its sections are in a config.
#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    pub sections: fn(&Config) -> Vec<Arc<dyn OutputSpec>>,
}

fn each<T: OutputSpec + Clone>(sections: &[T]) -> Vec<Arc<dyn OutputSpec>> {
    sections
        .iter()
        .map(|s| Arc::new(s.clone()) as Arc<dyn OutputSpec>)
        .collect()
}

/// Every output kind, in the order their outputs are listed (the router's indices and
/// `check` follow it).
pub const KINDS: &[Kind] = &[
    Kind {
        name: "influxdb",
        sections: |c| each(&c.outputs.influxdb),
    },
    Kind {
        name: "graphite",
        sections: |c| each(&c.outputs.graphite),
    },
    Kind {
        name: "nats",
        sections: |c| each(&c.outputs.nats),
    },
];

/// Every output section of a config, in [`KINDS`] order.
pub fn sections(config: &Config) -> Vec<Arc<dyn OutputSpec>> {
    KINDS.iter().flat_map(|k| (k.sections)(config)).collect()
}
