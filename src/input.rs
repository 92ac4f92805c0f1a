//! Checks on the arguments of the SQL functions, before anything is read or written.
//!
//! Every SQL function is declared non-STRICT so that a NULL reaches these checks and
//! gets a specific error instead of silently returning NULL.

use std::collections::HashSet;
use std::time::Duration;

use pglock_protocol::limits::{
    MAX_DATA_BYTES, MAX_HEARTBEAT_MANY, MAX_LABEL_CHARS, MAX_LEASE, MAX_SEMAPHORE_NAME_CHARS,
    MAX_SLOTS,
};
use pglock_protocol::Lease;
use pgrx::prelude::Interval;

use crate::error::PglockError;
use crate::interval::lease_of;

/// A lock name or owner label: 1 to [`MAX_LABEL_CHARS`] characters.
pub fn label<'a>(argument: &'static str, value: Option<&'a str>) -> Result<&'a str, PglockError> {
    let value = required(argument, value)?;
    if value.is_empty() {
        return Err(PglockError::EmptyLabel { argument });
    }
    let chars = value.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(PglockError::LabelTooLong { argument, chars });
    }
    Ok(value)
}

/// A lease: more than zero and at most a day, months counted as 30 days.
pub fn lease(argument: &'static str, value: Option<Interval>) -> Result<Lease, PglockError> {
    let lease = lease_of(required(argument, value)?);
    let micros = lease.as_micros();
    if micros <= 0 || micros > MAX_LEASE.as_micros() as i128 {
        return Err(PglockError::LeaseOutOfRange { argument, micros });
    }
    Ok(lease)
}

/// An optional new lease (heartbeat): NULL keeps the current one.
pub fn optional_lease(
    argument: &'static str,
    value: Option<Interval>,
) -> Result<Option<Lease>, PglockError> {
    value
        .map(|lease_value| lease(argument, Some(lease_value)))
        .transpose()
}

/// How long a waiting acquire may wait: zero or more; NULL waits as long as it takes.
pub fn wait_timeout(
    argument: &'static str,
    value: Option<Interval>,
) -> Result<Option<Duration>, PglockError> {
    match value {
        None => Ok(None),
        Some(interval) if interval.as_micros() < 0 => Err(PglockError::NegativeWait {
            argument,
            micros: interval.as_micros(),
        }),
        Some(interval) => Ok(Some(lease_of(interval).as_duration())),
    }
}

/// A record version number: the sequence starts at 1, so anything else cannot match.
pub fn rvn(argument: &'static str, value: Option<i64>) -> Result<i64, PglockError> {
    let value = required(argument, value)?;
    if value <= 0 {
        return Err(PglockError::RvnNotPositive {
            argument,
            rvn: value,
        });
    }
    Ok(value)
}

/// An optional RVN (`observed_rvn`): NULL means "none seen yet".
pub fn optional_rvn(
    argument: &'static str,
    value: Option<i64>,
) -> Result<Option<i64>, PglockError> {
    value
        .map(|rvn_value| rvn(argument, Some(rvn_value)))
        .transpose()
}

/// Lock data: optional, at most [`MAX_DATA_BYTES`].
pub fn data(value: Option<&[u8]>) -> Result<Option<&[u8]>, PglockError> {
    match value {
        Some(bytes) if bytes.len() > MAX_DATA_BYTES => {
            Err(PglockError::DataTooLarge { bytes: bytes.len() })
        }
        _ => Ok(value),
    }
}

/// A boolean switch such as `replace_data` or `keep`; its default is given in SQL.
pub fn flag(argument: &'static str, value: Option<bool>) -> Result<bool, PglockError> {
    required(argument, value)
}

/// A semaphore's name: a lock name short enough that its slots' names
/// (`<name>#<slot>`) are lock names too.
pub fn semaphore_name<'a>(
    argument: &'static str,
    value: Option<&'a str>,
) -> Result<&'a str, PglockError> {
    match label(argument, value) {
        Err(PglockError::LabelTooLong { chars, .. }) => {
            Err(PglockError::SemaphoreNameTooLong { argument, chars })
        }
        Ok(name) if name.chars().count() > MAX_SEMAPHORE_NAME_CHARS => {
            Err(PglockError::SemaphoreNameTooLong {
                argument,
                chars: name.chars().count(),
            })
        }
        checked => checked,
    }
}

/// A semaphore's slot count: 1 to [`MAX_SLOTS`].
pub fn slots(argument: &'static str, value: Option<i32>) -> Result<u32, PglockError> {
    let slots = required(argument, value)?;
    match u32::try_from(slots) {
        Ok(count) if (1..=MAX_SLOTS).contains(&count) => Ok(count),
        _ => Err(PglockError::SlotsOutOfRange { argument, slots }),
    }
}

/// The locks of a `pglock_heartbeat_many`: `names[i]` with `rvns[i]`, in the
/// arrays' order, each name a lock name given once and each RVN positive, at
/// most [`MAX_HEARTBEAT_MANY`] of them.
pub fn renewals(
    names: Option<Vec<Option<&str>>>,
    rvns: Option<Vec<Option<i64>>>,
) -> Result<Vec<(&str, i64)>, PglockError> {
    let names = required("names", names)?;
    let rvns = required("rvns", rvns)?;
    if names.len() > MAX_HEARTBEAT_MANY {
        return Err(PglockError::TooManyNames { count: names.len() });
    }
    if names.len() != rvns.len() {
        return Err(PglockError::ArrayLengthsDiffer {
            names: names.len(),
            rvns: rvns.len(),
        });
    }
    let element = |array, index: usize| {
        move |error| PglockError::Element {
            array,
            position: index + 1,
            error: Box::new(error),
        }
    };
    let mut seen = HashSet::with_capacity(names.len());
    let mut renewals = Vec::with_capacity(names.len());
    for (index, (name, rvn_value)) in names.into_iter().zip(rvns).enumerate() {
        let name = label("name", name).map_err(element("names", index))?;
        let rvn = rvn("rvn", rvn_value).map_err(element("rvns", index))?;
        if !seen.insert(name) {
            return Err(PglockError::RepeatedName {
                name: name.to_owned(),
            });
        }
        renewals.push((name, rvn));
    }
    Ok(renewals)
}

fn required<T>(argument: &'static str, value: Option<T>) -> Result<T, PglockError> {
    value.ok_or(PglockError::NullArgument { argument })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(days: i32, micros: i64) -> Interval {
        Interval::new(0, days, micros).expect("valid interval")
    }

    #[test]
    fn labels_must_be_present_non_empty_and_short() {
        assert_eq!(label("name", Some("jobs")), Ok("jobs"));
        assert_eq!(
            label("name", None),
            Err(PglockError::NullArgument { argument: "name" })
        );
        assert_eq!(
            label("owner", Some("")),
            Err(PglockError::EmptyLabel { argument: "owner" })
        );
        let longest = "é".repeat(MAX_LABEL_CHARS);
        assert_eq!(label("name", Some(&longest)), Ok(longest.as_str()));
        let too_long = "x".repeat(MAX_LABEL_CHARS + 1);
        assert_eq!(
            label("name", Some(&too_long)),
            Err(PglockError::LabelTooLong {
                argument: "name",
                chars: MAX_LABEL_CHARS + 1
            })
        );
    }

    #[test]
    fn leases_must_be_positive_and_at_most_a_day() {
        assert!(lease("lease", Some(interval(0, 1))).is_ok());
        assert!(lease("lease", Some(interval(1, 0))).is_ok());
        assert!(lease("lease", Some(interval(1, 1))).is_err());
        assert!(lease("lease", Some(interval(0, 0))).is_err());
        assert!(lease("lease", Some(interval(0, -5_000_000))).is_err());
        let one_month = Interval::new(1, 0, 0).expect("valid interval");
        assert_eq!(
            lease("lease", Some(one_month)).err(),
            Some(PglockError::LeaseOutOfRange {
                argument: "lease",
                micros: 30 * 86_400_000_000
            })
        );
        assert_eq!(
            lease("lease", None).err(),
            Some(PglockError::NullArgument { argument: "lease" })
        );
        assert!(matches!(optional_lease("lease", None), Ok(None)));
        assert!(optional_lease("lease", Some(interval(0, 0))).is_err());
    }

    #[test]
    fn rvns_must_be_positive() {
        assert_eq!(rvn("rvn", Some(1)), Ok(1));
        assert_eq!(
            rvn("rvn", Some(0)),
            Err(PglockError::RvnNotPositive {
                argument: "rvn",
                rvn: 0
            })
        );
        assert!(rvn("rvn", Some(i64::MIN)).is_err());
        assert_eq!(
            rvn("rvn", None),
            Err(PglockError::NullArgument { argument: "rvn" })
        );
        assert_eq!(optional_rvn("observed_rvn", None), Ok(None));
        assert!(optional_rvn("observed_rvn", Some(-1)).is_err());
    }

    #[test]
    fn semaphore_names_leave_room_for_their_slot_numbers() {
        let longest = "é".repeat(MAX_SEMAPHORE_NAME_CHARS);
        assert_eq!(semaphore_name("name", Some(&longest)), Ok(longest.as_str()));
        for chars in [MAX_SEMAPHORE_NAME_CHARS + 1, MAX_LABEL_CHARS + 1] {
            assert_eq!(
                semaphore_name("name", Some(&"x".repeat(chars))),
                Err(PglockError::SemaphoreNameTooLong {
                    argument: "name",
                    chars
                })
            );
        }
        assert_eq!(
            semaphore_name("name", Some("")),
            Err(PglockError::EmptyLabel { argument: "name" })
        );
        assert_eq!(
            semaphore_name("name", None),
            Err(PglockError::NullArgument { argument: "name" })
        );
    }

    #[test]
    fn slot_counts_are_one_to_a_thousand() {
        assert_eq!(slots("slots", Some(1)), Ok(1));
        assert_eq!(slots("slots", Some(1000)), Ok(1000));
        for bad in [0, -1, 1001, i32::MIN, i32::MAX] {
            assert_eq!(
                slots("slots", Some(bad)),
                Err(PglockError::SlotsOutOfRange {
                    argument: "slots",
                    slots: bad
                })
            );
        }
        assert_eq!(
            slots("slots", None),
            Err(PglockError::NullArgument { argument: "slots" })
        );
    }

    #[test]
    fn renewals_pair_names_with_rvns_each_checked() {
        assert_eq!(
            renewals(
                Some(vec![Some("b"), Some("a")]),
                Some(vec![Some(7), Some(3)])
            ),
            Ok(vec![("b", 7), ("a", 3)])
        );
        assert_eq!(renewals(Some(vec![]), Some(vec![])), Ok(vec![]));
        assert_eq!(
            renewals(None, Some(vec![])),
            Err(PglockError::NullArgument { argument: "names" })
        );
        assert_eq!(
            renewals(Some(vec![]), None),
            Err(PglockError::NullArgument { argument: "rvns" })
        );
        assert_eq!(
            renewals(Some(vec![Some("a")]), Some(vec![Some(1), Some(2)])),
            Err(PglockError::ArrayLengthsDiffer { names: 1, rvns: 2 })
        );
        assert_eq!(
            renewals(
                Some(vec![Some("a"), Some("a")]),
                Some(vec![Some(1), Some(2)])
            ),
            Err(PglockError::RepeatedName { name: "a".into() })
        );
        let element = |array, position, error| PglockError::Element {
            array,
            position,
            error: Box::new(error),
        };
        assert_eq!(
            renewals(Some(vec![Some("a"), None]), Some(vec![Some(1), Some(2)])),
            Err(element(
                "names",
                2,
                PglockError::NullArgument { argument: "name" }
            ))
        );
        assert_eq!(
            renewals(
                Some(vec![Some("a"), Some("")]),
                Some(vec![Some(1), Some(2)])
            ),
            Err(element(
                "names",
                2,
                PglockError::EmptyLabel { argument: "name" }
            ))
        );
        assert_eq!(
            renewals(Some(vec![Some("a")]), Some(vec![None])),
            Err(element(
                "rvns",
                1,
                PglockError::NullArgument { argument: "rvn" }
            ))
        );
        assert_eq!(
            renewals(Some(vec![Some("a")]), Some(vec![Some(0)])),
            Err(element(
                "rvns",
                1,
                PglockError::RvnNotPositive {
                    argument: "rvn",
                    rvn: 0
                }
            ))
        );
    }

    #[test]
    fn renewals_are_at_most_ten_thousand() {
        let names: Vec<String> = (0..=MAX_HEARTBEAT_MANY).map(|n| n.to_string()).collect();
        let all: Vec<Option<&str>> = names.iter().map(|name| Some(name.as_str())).collect();
        let rvns = vec![Some(1); all.len()];
        assert_eq!(
            renewals(Some(all.clone()), Some(rvns.clone())),
            Err(PglockError::TooManyNames {
                count: MAX_HEARTBEAT_MANY + 1
            })
        );
        let most = MAX_HEARTBEAT_MANY;
        assert_eq!(
            renewals(Some(all[..most].to_vec()), Some(rvns[..most].to_vec())).map(|v| v.len()),
            Ok(most)
        );
    }

    #[test]
    fn data_is_limited_in_size() {
        assert_eq!(data(None), Ok(None));
        let largest = vec![0u8; MAX_DATA_BYTES];
        assert!(data(Some(&largest)).is_ok());
        let too_large = vec![0u8; MAX_DATA_BYTES + 1];
        assert_eq!(
            data(Some(&too_large)),
            Err(PglockError::DataTooLarge {
                bytes: MAX_DATA_BYTES + 1
            })
        );
    }
}
