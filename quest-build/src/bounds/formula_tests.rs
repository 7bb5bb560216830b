//! The formula's properties: every term is monotone in every parameter (more costs, bytes,
//! period, jitter or burst never lower the bound; a longer promised interval never raises
//! it), never below the floor, and the worked example in partition-manifests/README.md.

use super::*;
use proptest::prelude::*;

fn costs() -> impl Strategy<Value = Costs> {
    (
        (0u64..2_000, 0u64..5_000, 0u64..50_000, 0u64..5_000),
        (0u64..50_000, 0u64..100_000, 0u64..100_000, 0u64..100_000),
    )
        .prop_map(|((lt, sf, sk, rf), (rk, ve, ipi, wake))| Costs {
            line_transfer: lt,
            send_fixed: sf,
            send_per_kib: sk,
            recv_fixed: rf,
            recv_per_kib: rk,
            vm_exit_entry: ve,
            ipi,
            wake,
        })
}

fn detection() -> impl Strategy<Value = Detection> {
    prop_oneof![
        Just(Detection::Spin),
        Just(Detection::Doorbell),
        (1u64..10_000_000, 0u64..1_000_000)
            .prop_map(|(period, jitter)| Detection::Poll { period, jitter }),
    ]
}

fn channel() -> impl Strategy<Value = Channel> {
    (
        1u64..64,
        0u64..1_000_000,
        detection(),
        proptest::option::of(1u64..10_000_000),
        proptest::option::of(1u64..5_000),
        0u64..100_000,
    )
        .prop_map(
            |(pages, msg, detection, min_interval, burst, reader_work)| {
                let ring = pages * 4096 - 128;
                Channel {
                    ring,
                    max_message: msg % (ring - 15),
                    detection,
                    min_interval,
                    burst,
                    reader_work,
                }
            },
        )
}

/// One cost raised by `by`.
fn raise(k: Costs, which: usize, by: u64) -> Costs {
    let mut k = k;
    let f = [
        &mut k.line_transfer,
        &mut k.send_fixed,
        &mut k.send_per_kib,
        &mut k.recv_fixed,
        &mut k.recv_per_kib,
        &mut k.vm_exit_entry,
        &mut k.ipi,
        &mut k.wake,
    ];
    for (i, v) in f.into_iter().enumerate() {
        if i == which {
            *v += by;
        }
    }
    k
}

fn no_lower(a: &Bound, b: &Bound) -> Result<(), TestCaseError> {
    prop_assert!(b.total >= a.total, "total {} -> {}", a.total, b.total);
    prop_assert!(b.full_ring_wait >= a.full_ring_wait);
    Ok(())
}

proptest! {
    #[test]
    fn monotone_in_every_cost(c in channel(), k in costs(), which in 0usize..8, by in 1u64..10_000) {
        no_lower(&bound(&c, &k), &bound(&c, &raise(k, which, by)))?;
    }

    #[test]
    fn monotone_in_message_and_ring(c in channel(), k in costs(), more in 1u64..4096) {
        let a = bound(&c, &k);
        let mut bigger = c;
        bigger.max_message = (c.max_message + more).min(c.ring - 16);
        no_lower(&a, &bound(&bigger, &k))?;
        let mut roomier = c;
        roomier.ring += 4096;
        no_lower(&a, &bound(&roomier, &k))?;
    }

    #[test]
    fn monotone_in_the_writers_promise(c in channel(), k in costs(), more in 1u64..1_000) {
        let a = bound(&c, &k);
        // A larger burst, or no burst promised, never lowers the bound.
        let mut burstier = c;
        burstier.burst = c.burst.map(|b| b + more);
        no_lower(&a, &bound(&burstier, &k))?;
        let mut unbounded = c;
        unbounded.burst = None;
        unbounded.min_interval = None;
        no_lower(&a, &bound(&unbounded, &k))?;
        // A longer interval never raises it.
        let mut calmer = c;
        calmer.min_interval = c.min_interval.map(|i| i + more);
        no_lower(&bound(&calmer, &k), &a)?;
    }

    #[test]
    fn monotone_in_the_readers_work(c in channel(), k in costs(), more in 1u64..100_000) {
        no_lower(&bound(&c, &k), &bound(&Channel { reader_work: c.reader_work + more, ..c }, &k))?;
    }

    #[test]
    fn monotone_in_the_readers_period(c in channel(), k in costs(), more in 1u64..100_000) {
        if let Detection::Poll { period, jitter } = c.detection {
            let a = bound(&c, &k);
            let mut slower = c;
            slower.detection = Detection::Poll { period: period + more, jitter };
            no_lower(&a, &bound(&slower, &k))?;
            let mut shakier = c;
            shakier.detection = Detection::Poll { period, jitter: jitter + more };
            no_lower(&a, &bound(&shakier, &k))?;
        }
    }

    /// The closed form is the iteration's limit: ceil((base + a x each) / interval) <= a,
    /// and one less would not be a fixed point.
    #[test]
    fn the_rate_term_is_the_least_fixed_point(c in channel(), k in costs()) {
        let b = bound(&c, &k);
        if let (Some(interval), None, QueueLimit::Promise) = (c.min_interval, c.burst, b.queue_limit) {
            let base = b.total - b.queueing;
            let each = b.queueing.checked_div(b.ahead).unwrap_or(0);
            let f = |a: u64| (base + a * each).div_ceil(interval);
            prop_assert!(f(b.ahead) <= b.ahead, "f({}) = {}", b.ahead, f(b.ahead));
            if b.ahead > 0 && each > 0 {
                prop_assert!(f(b.ahead - 1) > b.ahead - 1);
            }
        }
    }

    #[test]
    fn terms_add_up_and_never_below_the_floor(c in channel(), k in costs()) {
        let b = bound(&c, &k);
        prop_assert_eq!(
            b.total,
            b.writer_copy + b.transfer + b.detection + b.queueing + b.reader_copy
        );
        prop_assert!(b.total >= b.floor);
        prop_assert!(b.ahead <= c.ring / 16);
        prop_assert!(b.capacity >= 1);
    }
}

/// The worked example of partition-manifests/README.md: a 4 KiB channel, 1 KiB messages, a
/// reader polling every 1000 cycles with 100 cycles of jitter, a burst of 3.
#[test]
fn worked_example() {
    let k = Costs {
        line_transfer: 100,
        send_fixed: 50,
        send_per_kib: 1000,
        recv_fixed: 60,
        recv_per_kib: 1200,
        vm_exit_entry: 2000,
        ipi: 500,
        wake: 700,
    };
    let c = Channel {
        ring: 4096 - 128,
        max_message: 1024,
        detection: Detection::Poll {
            period: 1000,
            jitter: 100,
        },
        min_interval: None,
        burst: Some(3),
        reader_work: 0,
    };
    let b = bound(&c, &k);
    // record = 16 (header, stamp) + 1024 bytes; 18 lines (17 touched, one more for
    // alignment).
    assert_eq!(b.record, 1040);
    assert_eq!(b.capacity, 3);
    assert_eq!(b.writer_copy, 50 + 1016); // ceil(1040 x 1000 / 1024)
    assert_eq!(b.transfer, 18 * 100);
    assert_eq!(b.detection, 1000 + 100 + 100);
    assert_eq!(b.reader_copy, 60 + 1219); // ceil(1040 x 1200 / 1024)
    assert_eq!(b.ahead, 2);
    assert_eq!(b.queueing, 2 * (60 + 1219 + 1800));
    assert_eq!(b.total, 1066 + 1800 + 1200 + 6158 + 1279);
    // Doorbell instead: exit + IPI + wake-up + the index line.
    let d = bound(
        &Channel {
            detection: Detection::Doorbell,
            ..c
        },
        &k,
    );
    // Doorbell instead: exit + wake-up (which includes the IPI) + the index line.
    assert_eq!(d.detection, 2000 + 700 + 100);
    // The reader's own work per message adds to each message ahead.
    let busy = bound(
        &Channel {
            reader_work: 500,
            ..c
        },
        &k,
    );
    assert_eq!(busy.queueing, b.queueing + 2 * 500);
    // No promise at all: the ring full of the smallest records.
    let free = bound(&Channel { burst: None, ..c }, &k);
    assert_eq!(free.ahead, (4096 - 128) / 16);
    assert_eq!(free.queue_limit, QueueLimit::NoPromise);
    assert!(free.total > b.total);
}

#[test]
fn a_rate_bounds_the_queue_by_response_time() {
    let k = Costs {
        line_transfer: 10,
        send_fixed: 10,
        send_per_kib: 100,
        recv_fixed: 10,
        recv_per_kib: 100,
        vm_exit_entry: 0,
        ipi: 0,
        wake: 0,
    };
    let c = Channel {
        ring: 65536 - 128,
        max_message: 64,
        detection: Detection::Poll {
            period: 10_000,
            jitter: 0,
        },
        min_interval: Some(1_000),
        burst: None,
        reader_work: 0,
    };
    let b = bound(&c, &k);
    // About period / interval messages pile up between two looks, and a few more while
    // they are read.
    assert!((10..=12).contains(&b.ahead), "ahead {}", b.ahead);
    assert_eq!(b.queue_limit, QueueLimit::Promise);
    // A reader slower than the writer's interval: the promise bounds nothing.
    let slow = bound(
        &Channel {
            reader_work: 2_000,
            ..c
        },
        &k,
    );
    assert_eq!(slow.queue_limit, QueueLimit::ReaderTooSlow);
    assert_eq!(slow.ahead, c.ring / 16);
    assert_eq!(
        b.total,
        b.writer_copy + b.transfer + b.detection + b.queueing + b.reader_copy
    );
}
