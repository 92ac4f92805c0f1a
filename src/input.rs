//! Checks on the arguments of the SQL functions, before anything is read or written.
//!
//! Every SQL function is declared non-STRICT so that a NULL reaches these checks and
//! gets a specific error instead of silently returning NULL.

use std::collections::HashSet;
use std::time::Duration;

use pglock_protocol::arguments;
use pglock_protocol::limits::MAX_HEARTBEAT_MANY;
use pglock_protocol::Lease;
use pgrx::prelude::Interval;

use crate::error::PglockError;
use crate::interval::lease_of;

/// A lock name or owner label (see [`arguments::label`]).
pub fn label<'a>(argument: &'static str, value: Option<&'a str>) -> Result<&'a str, PglockError> {
    Ok(arguments::label(argument, required(argument, value)?)?)
}

/// A lease (see [`arguments::lease`]).
pub fn lease(argument: &'static str, value: Option<Interval>) -> Result<Lease, PglockError> {
    Ok(arguments::lease(
        argument,
        lease_of(required(argument, value)?),
    )?)
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

/// How long a waiting call may wait: zero or more; NULL waits as long as it takes.
pub fn wait_timeout(
    argument: &'static str,
    value: Option<Interval>,
) -> Result<Option<Duration>, PglockError> {
    value
        .map(|interval| arguments::wait(argument, lease_of(interval)))
        .transpose()
        .map_err(PglockError::from)
}

/// A record version number (see [`arguments::rvn`]).
pub fn rvn(argument: &'static str, value: Option<i64>) -> Result<i64, PglockError> {
    Ok(arguments::rvn(argument, required(argument, value)?)?)
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

/// Lock data: optional, limited in size (see [`arguments::data`]).
pub fn data(value: Option<&[u8]>) -> Result<Option<&[u8]>, PglockError> {
    Ok(value.map(arguments::data).transpose()?)
}

/// A boolean switch such as `replace_data` or `keep`; its default is given in SQL.
pub fn flag(argument: &'static str, value: Option<bool>) -> Result<bool, PglockError> {
    required(argument, value)
}

/// A semaphore's name (see [`arguments::semaphore_name`]).
pub fn semaphore_name<'a>(
    argument: &'static str,
    value: Option<&'a str>,
) -> Result<&'a str, PglockError> {
    Ok(arguments::semaphore_name(
        argument,
        required(argument, value)?,
    )?)
}

/// A semaphore's slot count (see [`arguments::slots`]).
pub fn slots(argument: &'static str, value: Option<i32>) -> Result<u32, PglockError> {
    Ok(arguments::slots(
        argument,
        i64::from(required(argument, value)?),
    )?)
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
    use pglock_protocol::ArgumentError;

    use super::*;

    /// The rules themselves are the protocol's (and tested there): here, that
    /// a NULL is refused before them and that their errors come through.
    #[test]
    fn nulls_are_refused_and_the_protocols_rules_apply() {
        let null = |argument| Some(PglockError::NullArgument { argument });
        assert_eq!(label("name", None).err(), null("name"));
        assert_eq!(lease("lease", None).err(), null("lease"));
        assert_eq!(rvn("rvn", None).err(), null("rvn"));
        assert_eq!(slots("slots", None).err(), null("slots"));
        assert_eq!(semaphore_name("name", None).err(), null("name"));
        assert_eq!(flag("keep", None).err(), null("keep"));
        assert_eq!(label("name", Some("jobs")), Ok("jobs"));
        assert_eq!(
            label("owner", Some("")),
            Err(PglockError::Argument(ArgumentError::EmptyLabel {
                argument: "owner"
            }))
        );
        let zero = Interval::new(0, 0, 0).expect("valid interval");
        assert!(matches!(
            lease("lease", Some(zero)),
            Err(PglockError::Argument(ArgumentError::LeaseOutOfRange { .. }))
        ));
        assert!(matches!(optional_lease("lease", None), Ok(None)));
        assert_eq!(optional_rvn("observed_rvn", None), Ok(None));
        assert!(optional_rvn("observed_rvn", Some(-1)).is_err());
        assert_eq!(wait_timeout("wait_timeout", None), Ok(None));
        let back = Interval::new(0, 0, -1).expect("valid interval");
        assert!(wait_timeout("wait_timeout", Some(back)).is_err());
        assert_eq!(data(None), Ok(None));
        assert_eq!(
            slots("slots", Some(0)),
            Err(PglockError::Argument(ArgumentError::SlotsOutOfRange {
                argument: "slots",
                slots: 0
            }))
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
                PglockError::Argument(ArgumentError::EmptyLabel { argument: "name" })
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
                PglockError::Argument(ArgumentError::RvnNotPositive {
                    argument: "rvn",
                    rvn: 0
                })
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
}
