# Draws the runner's result lines ("case label clients tps latency_ms") as an SVG
# bar chart: one group per case and client count, one bar per variant (median
# run), throughput on a logarithmic axis so advisory locks and disk-bound
# commits fit on one chart.

{
    key = $1 SUBSEP $2 SUBSEP $3
    if (!(key in runs)) {
        order[++keys] = key
    }
    runs[key]++
    run_tps[key, runs[key]] = $4
    group = $1 " (" $3 (($3 == 1) ? " client)" : " clients)")
    if (!(group in group_index)) {
        group_index[group] = ++groups
        group_name[groups] = group
    }
    key_group[key] = group_index[group]
    key_label[key] = $2
    if (!($2 in label_index)) {
        label_index[$2] = ++labels
        label_name[labels] = $2
    }
}

function median(key,    i, j, n, sorted, swap) {
    n = runs[key]
    for (i = 1; i <= n; i++) sorted[i] = run_tps[key, i]
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && sorted[j] < sorted[j - 1]; j--) {
            swap = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = swap
        }
    return sorted[int((n + 1) / 2)]
}

function log10(x) { return log(x) / log(10) }

END {
    split("#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b", colour, " ")
    bar = 14; gap = 18; left = 250; top = 40; width = 640
    # Count bars per group to lay the groups out.
    for (k = 1; k <= keys; k++) bars_in[key_group[order[k]]]++
    y = top
    for (g = 1; g <= groups; g++) {
        group_y[g] = y
        y += bars_in[g] * bar + gap
    }
    height = y + 60
    max = 1; min = 0
    for (k = 1; k <= keys; k++) {
        value = median(order[k])
        if (value > max) max = value
        if (value > 0 && (min == 0 || value < min)) min = value
    }
    low = min > 1 ? int(log10(min)) : 0
    decades = int(log10(max)) + 1 - low
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", left + width + 160, height
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"%d\" y=\"22\" font-size=\"15\">pglock benchmark: throughput per second (median run, log scale)</text>\n", left
    for (d = 0; d <= decades; d++) {
        x = left + width * d / decades
        printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, top - 5, x, y
        printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x, y + 16, 10 ^ (low + d)
    }
    for (g = 1; g <= groups; g++)
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 8,
            group_y[g] + bars_in[g] * bar / 2 + 4, group_name[g]
    for (k = 1; k <= keys; k++) {
        key = order[k]; g = key_group[key]
        slot[g]++
        value = median(key)
        w = value > 10 ^ low ? width * (log10(value) - low) / decades : 1
        by = group_y[g] + (slot[g] - 1) * bar
        printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>%s: %.0f/s</title></rect>\n",
            left, by, w, bar - 2, colour[label_index[key_label[key]]], key_label[key], value
        printf "<text x=\"%.1f\" y=\"%d\" font-size=\"10\">%.0f</text>\n", left + w + 4, by + bar - 4, value
    }
    for (l = 1; l <= labels; l++) {
        printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", left + width + 40, top + (l - 1) * 20, colour[l]
        printf "<text x=\"%d\" y=\"%d\">%s</text>\n", left + width + 58, top + (l - 1) * 20 + 10, label_name[l]
    }
    printf "</svg>\n"
}
