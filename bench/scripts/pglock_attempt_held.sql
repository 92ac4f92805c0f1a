-- pglock: a failed attempt on a lock another owner holds.  Every contender is
-- refused whatever its owner, so the owner is a constant: the statement is then
-- as simple as the plain read it is compared with (in simple mode, parsing and
-- planning 'c' || :client_id cost a quarter of the call).
SELECT acquired FROM pglock_acquire('held', 'contender');
