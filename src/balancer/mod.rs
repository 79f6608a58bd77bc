//! Choosing an invoker: OpenWhisk's sharding pool balancer, invoker health and capacity.
//!
//! This module owns the pure scheduling decision of one controller: which invoker an
//! activation goes to, given what the invokers last said about themselves (their pings) and
//! what this controller has in flight on each. It never does I/O and never reads the clock:
//! callers pass `now`, so every rule here is unit-tested with a fake clock, and the same logic
//! serves any bus that has several invokers (today: Kafka).
//!
//! - [`health`]: one invoker's state (up / unhealthy / offline) from its pings.
//! - [`sharding`]: home invoker and co-prime step per action, capacity accounting, and the
//!   share of each invoker's memory this controller may use (capacity / live controllers).

pub mod health;
pub mod sharding;

pub use health::{
    ControllerPing, Health, HealthMessage, InvokerId, InvokerState, Ping, Transition,
};
pub use sharding::{shard_mb, BalancerConfig, Choice, NoInvoker, ShardingBalancer};
