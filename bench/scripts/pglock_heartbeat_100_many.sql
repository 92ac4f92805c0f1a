-- One round of pglock_heartbeat_many: the session's 100 locks (:names, a text
-- array literal, owner 'bench') renewed by one call, one commit.  :rvns (a bigint
-- array literal in the same order) starts as the runner acquired them and keeps
-- the new RVNs.  A round that renews fewer than all 100 fails (division by zero).
SELECT array_agg(h.rvn ORDER BY h.n)::text AS rvns,
       1 / (count(*) FILTER (WHERE h.renewed) = 100)::int AS all_renewed
  FROM pglock_heartbeat_many('bench', :names::text[], :rvns::bigint[])
       WITH ORDINALITY AS h(name, rvn, renewed, n) \gset
