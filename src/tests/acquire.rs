#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn acquire_creates_a_lock() {
        let acquired =
            Spi::get_one::<bool>("SELECT acquired FROM pglock_acquire('a', 'me')").unwrap();
        assert_eq!(acquired, Some(true));
    }
}
