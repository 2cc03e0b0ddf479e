//! CEL conditions (from `omium-spec`, re-exported under their old path).

pub use omium_spec::expr::*;
