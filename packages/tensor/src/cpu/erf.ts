// erf(x) to double precision, for the exact (erf-based) GELU that torch uses by default.
// W. J. Cody's rational Chebyshev approximations (Math. Comp. 23, 1969), as in many libm's: relative
// error below 1e-15 over the real line, far below f32 resolution.

const A = [3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947, 0.185777706184603153];
const B = [23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062];
const C = [0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131, 881.95222124176909,
  1712.04761263407058, 2051.07837782607147, 1230.33935479799725, 2.15311535474403846e-8];
const D = [15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019, 3290.79923573345963,
  4362.61909014324716, 3439.36767414372164, 1230.33935480374942];
const P = [0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766,
  6.58749161529837803e-4, 0.0163153871373020978];
const Q = [2.56852019228982242, 1.87295284992346725, 0.527905102951428412, 0.0605183413124413191, 0.00233520497626869185];
const SQRPI = 0.56418958354775628695; // 1/sqrt(pi)

export function erf(x: number): number {
  const y = Math.abs(x);
  let r: number;
  if (y <= 0.46875) {
    const z = y > 1.11e-16 ? y * y : 0;
    let num = A[4]! * z, den = z;
    for (let i = 0; i < 3; i++) { num = (num + A[i]!) * z; den = (den + B[i]!) * z; }
    return (x * (num + A[3]!)) / (den + B[3]!);
  }
  if (y <= 4) {
    let num = C[8]! * y, den = y;
    for (let i = 0; i < 7; i++) { num = (num + C[i]!) * y; den = (den + D[i]!) * y; }
    r = (num + C[7]!) / (den + D[7]!);
  } else {
    if (y >= 6) return x > 0 ? 1 : -1;
    const z = 1 / (y * y);
    let num = P[5]! * z, den = z;
    for (let i = 0; i < 4; i++) { num = (num + P[i]!) * z; den = (den + Q[i]!) * z; }
    r = (z * (num + P[4]!)) / (den + Q[4]!);
    r = (SQRPI - r) / y;
  }
  const ysq = Math.trunc(y * 16) / 16;
  const del = (y - ysq) * (y + ysq);
  r = Math.exp(-ysq * ysq) * Math.exp(-del) * r;
  const erfc = r;
  return x > 0 ? 1 - erfc : erfc - 1;
}
