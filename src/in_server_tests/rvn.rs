#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{acquire, one};

    /// Every write draws from one sequence: RVNs grow across calls and across locks,
    /// so an RVN works as a fencing token.
    #[pg_test]
    fn every_write_gets_a_larger_rvn_than_any_before_it() {
        let mut seen = vec![];
        for round in 0..5 {
            let (_, rvn, _) = acquire(&format!("'a', 'o{round}'"));
            seen.push(rvn);
            let rvn: i64 = one(&format!("SELECT pglock_heartbeat('a', 'o{round}', {rvn})"));
            seen.push(rvn);
            let (_, other, _) = acquire(&format!("'b{round}', 'o'"));
            seen.push(other);
            one::<bool>(&format!(
                "SELECT pglock_release('a', 'o{round}', {rvn}, keep => {})",
                round % 2 == 0
            ));
            if round % 2 == 0 {
                seen.push(one("SELECT rvn FROM pglock_get('a')"));
            }
        }
        assert!(
            seen.windows(2).all(|pair| pair[0] < pair[1]),
            "RVNs in order: {seen:?}"
        );
    }
}
