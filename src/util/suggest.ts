/** Edit distance (insertions, deletions, substitutions and swaps of neighbours), for "did you mean". */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [
    i,
    ...Array<number>(b.length).fill(0),
  ]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The known value closest to what was typed, when it is close enough to be a typo (case and `_`/`-` aside):
 * `lastest` → `latest`, `LITEKEEP_TIMEZONE` → `LITEKEEP_TIME_ZONE`. Undefined when nothing is close.
 */
export function closestMatch(input: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance =
      norm(candidate) === norm(input) ? 0 : editDistance(input.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const allowed = Math.max(2, Math.floor(input.length / 4));
  return best !== undefined && bestDistance <= allowed && best !== input ? best : undefined;
}

/** ` (did you mean X?)` for an error message, or nothing. */
export function didYouMean(input: string, known: readonly string[]): string {
  const match = closestMatch(input, known);
  return match ? ` (did you mean ${match}?)` : '';
}
