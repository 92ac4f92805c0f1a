# Turns the runner's result lines ("case label clients tps latency_ms", one per
# pgbench run, several runs per key) into the closing table: the median run of
# each key, and the ratios that count.

{
    key = $1 SUBSEP $2 SUBSEP $3
    runs[key]++
    run_tps[key, runs[key]] = $4
    run_latency[key, runs[key]] = $5
}

# The median run by throughput (the lower middle one for an even count).
function median(key,    i, j, n, order, swap) {
    n = runs[key]
    for (i = 1; i <= n; i++) order[i] = i
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && run_tps[key, order[j]] < run_tps[key, order[j - 1]]; j--) {
            swap = order[j]; order[j] = order[j - 1]; order[j - 1] = swap
        }
    return order[int((n + 1) / 2)]
}

function tps(case, label, clients,    key) {
    key = case SUBSEP label SUBSEP clients
    return (key in runs) ? run_tps[key, median(key)] : 0
}

function latency(case, label, clients,    key) {
    key = case SUBSEP label SUBSEP clients
    return (key in runs) ? run_latency[key, median(key)] : 0
}

function ratio(a, b) { return b > 0 ? sprintf("%.2fx", a / b) : "n/a" }

# "met" or "not met" for a ratio and its target.
function target(a, b, goal) {
    return b > 0 ? sprintf("target >= %.1fx: %s", goal, a / b >= goal ? "met" : "NOT met") : ""
}

END {
    printf "%-32s %7s %10s %10s %10s %10s %13s %12s\n", "uncontended acquire+release", "clients",
        "pglock/s", "client/s", "floor/s", "advisory/s", "pglock/client", "pglock/floor"
    for (c = 1; c <= 16; c *= 4)
        printf "%-32s %7d %10.0f %10.0f %10.0f %10.0f %13s %12s\n", "", c,
            tps("uncontended", "pglock", c), tps("uncontended", "client", c),
            tps("uncontended", "floor", c), tps("uncontended", "advisory", c),
            ratio(tps("uncontended", "pglock", c), tps("uncontended", "client", c)),
            ratio(tps("uncontended", "pglock", c), tps("uncontended", "floor", c))
    printf "%-32s %7s %10s %10s %13s\n", "heartbeats", "clients", "pglock/s", "client/s", "pglock/client"
    for (c = 1; c <= 16; c *= 4)
        printf "%-32s %7d %10.0f %10.0f %13s\n", "", c, tps("heartbeat", "pglock", c),
            tps("heartbeat", "client", c), ratio(tps("heartbeat", "pglock", c), tps("heartbeat", "client", c))
    printf "%-32s %7d %10.0f %10.0f %13s\n", "failed attempts on a held lock", 16,
        tps("failed-attempt", "pglock", 16), tps("failed-attempt", "client", 16),
        ratio(tps("failed-attempt", "pglock", 16), tps("failed-attempt", "client", 16))
    printf "%-32s %7s %10s %10s %13s\n", "failed attempt vs reading its row", "clients", "pglock/s",
        "read/s", "pglock/read"
    for (m = 1; m <= 2; m++) {
        mode = m == 1 ? "prepared" : "simple"
        a = tps("failed-attempt-" mode, "pglock", 16); b = tps("failed-attempt-" mode, "plain-read", 16)
        printf "%-32s %7d %10.0f %10.0f %13s   %s\n", "  " mode, 16, a, b, ratio(a, b), target(a, b, 0.8)
    }
    printf "%-32s %7s %10s %10s   (pglock: %d transaction ids taken)\n", "  WAL bytes per failed attempt", "",
        sprintf("%.3f", (failed_attempts > 0 ? pglock_wal / failed_attempts : 0)),
        sprintf("%.1f", (client_attempts > 0 ? client_wal / client_attempts : 0)), pglock_xids
    printf "%-32s %7d %10.0f %10.0f %13s\n", "contention on one lock", 16,
        tps("contention", "pglock", 16), tps("contention", "client", 16),
        ratio(tps("contention", "pglock", 16), tps("contention", "client", 16))
    for (c = 1; c <= 16; c *= 16)
        printf "%-32s %7d %8.3fms %8.3fms %13s   latency with %s rows / with 1,000\n",
            "scale: 1,000 vs many rows", c, latency("scale-small", "pglock", c),
            latency("scale-large", "pglock", c),
            ratio(latency("scale-large", "pglock", c), latency("scale-small", "pglock", c)), scale_rows
    printf "%-32s %7s %10s %10s %13s\n", "CPU-bound (fsync = off)", "clients", "pglock/s",
        "client/s", "pglock/client"
    a = tps("cpu-uncontended", "pglock", 4); b = tps("cpu-uncontended", "client", 4)
    printf "%-32s %7d %10.0f %10.0f %13s   %s\n", "  acquire+release", 4, a, b, ratio(a, b),
        target(a, b, 1.4)
    a = tps("cpu-heartbeat", "pglock", 4); b = tps("cpu-heartbeat", "client", 4)
    printf "%-32s %7d %10.0f %10.0f %13s   %s\n", "  heartbeat", 4, a, b, ratio(a, b), target(a, b, 1.5)
    a = tps("async-uncontended", "pglock", 4); b = tps("async-uncontended", "client", 4)
    printf "%-32s %7d %10.0f %10.0f %13s   pglock durable, client-side not\n",
        "synchronous_commit = off", 4, a, b, ratio(a, b)
    printf "%-32s %7s %10d %10d %13s   after %s heartbeats; HOT updates %d of %d = %.1f%%\n",
        "bloat: table+index bytes", "", size_before, size_after, ratio(size_after, size_before),
        bloat_heartbeats, hot, updates, (updates > 0 ? 100 * hot / updates : 0)
    # A round renews 100 locks: renewals per second are 100 rounds per second.
    printf "%-32s %7s %10s %10s %13s\n", "renewing 100 locks, renewals", "clients",
        "many/s", "single/s", "many/single"
    a = tps("rounds-renewing-100-locks", "many", 1); b = tps("rounds-renewing-100-locks", "single", 1)
    printf "%-32s %7d %10.0f %10.0f %13s   %s\n", "", 1, 100 * a, 100 * b, ratio(a, b),
        target(a, b, 10)
}
