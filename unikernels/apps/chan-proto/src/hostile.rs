//! The script of `partition-manifests/channels-hostile.toml`, shared by its apps.

/// Stream seed of the healthy channel (`healthy`, feeder to collector).
pub const HEALTHY_SEED: u64 = 0x6865_616c;
/// Stream seed of the hostile writer's valid messages (on every hostile channel).
pub const HOSTILE_SEED: u64 = 0x686f_7374;
/// Stream seed of the messages the scribbler receives before it attacks.
pub const SCRIBBLER_SEED: u64 = 0x7363_7269;
/// Valid messages the hostile writer sends on each channel before it scribbles.
pub const VALID_BEFORE_SCRIBBLE: u64 = 8;
/// Messages the scribbler receives (and verifies) before it attacks.
pub const SCRIBBLER_MESSAGES: u64 = 4;
/// The hostile channels and what the hostile writer does to each.
pub const HOSTILE_CHANNELS: [(&str, &str); 2] = [
    ("hostile-index", "write index moved more than a ring ahead"),
    ("hostile-length", "record header with an impossible length"),
];
