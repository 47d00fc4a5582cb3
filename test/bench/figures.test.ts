import { describe, expect, it } from 'vitest';
import { medianWithCi, rng } from '../../bench/figures.ts';

describe('the median and its 95% confidence interval (the bench’s paired comparisons)', () => {
  it('takes the order statistics the binomial tail names', () => {
    const values = Array.from({ length: 101 }, (_, i) => 101 - i);
    expect(medianWithCi(values)).toEqual({ median: 51, ci95_low: 40, ci95_high: 62 });
  });

  it('covers the true median of a skewed distribution about 95% of the time at 200 samples', () => {
    const random = rng(7);
    const trueMedian = Math.LN2; // exponential(1)
    let covered = 0;
    const runs = 400;
    for (let r = 0; r < runs; r += 1) {
      const ci = medianWithCi(Array.from({ length: 200 }, () => -Math.log(1 - random())));
      if (ci.ci95_low <= trueMedian && trueMedian <= ci.ci95_high) covered += 1;
    }
    expect(covered / runs).toBeGreaterThan(0.92);
    expect(covered / runs).toBeLessThan(0.985);
  });
});
