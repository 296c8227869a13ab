// Pose keypoints in the OpenPose JSON format, and the pose alignment of ControlNeXt-SVD-v2's
// pre-processing (ControlNeXt-SVD-v2/dwpose/preprocess.py get_video_pose; spec 7.3). Keypoint detection
// (DWPose / OpenPose) is not part of this project: its output files are the input here.
//
// OpenPose JSON (one file per frame, or an array of frames): { "people": [{ "pose_keypoints_2d": [x, y, c,
// ...], "face_keypoints_2d": [...], "hand_left_keypoints_2d": [...], "hand_right_keypoints_2d": [...] }],
// "canvas_width"?, "canvas_height"? }. Body: 18 points (OpenPose COCO / DWPose order) or 25 (BODY_25,
// mapped to the 18). Face: the first 68 points (OpenPose's 69-70 are the pupils, which DWPose lacks).
// Hands: 21 points each, left first (as DWPose stacks them). Coordinates are pixels of the source frame
// (its size from canvas_width/height, else given by the caller), or already normalised to [0, 1].
//
// Alignment (the v2 pre-processing): the reference image's body points [0, 1, 2, 5, 8..17] that were
// detected (confidence > 0.3) anchor a linear map of the driving frames' normalised coordinates:
//   y_ref ~ a_y y + b_y   (least squares over every single-person frame and those points)
//   a_x = a_y (fw / fh) (H / W)    (fh x fw: the driving frames' pixel size; H x W: the reference's)
//   b_x = mean(x_ref - a_x x)
// applied to every body, face and hand point of every frame. DWPose reports coordinates even for
// undetected points and the repo fits over them; an OpenPose file has none there (0, 0, 0), so points
// with confidence 0 are left out of the fit.

/** One person: normalised [x, y] pairs and confidences. */
export interface PosePerson {
  /** 18 body points (OpenPose COCO order): x0, y0, x1, y1, ... */
  body: Float64Array;
  bodyScore: Float64Array;
  /** 68 face points, or empty. */
  face: Float64Array;
  faceScore: Float64Array;
  /** Left then right hand, 21 points each (empty when absent). */
  hands: [Float64Array, Float64Array];
  handScores: [Float64Array, Float64Array];
}

/** One frame's people, with the pixel size its coordinates were measured in. */
export interface PoseFrame {
  width: number;
  height: number;
  people: PosePerson[];
}

/** BODY_25 index of each of the 18 COCO body points (BODY_25 adds mid-hip at 8 and six foot points). */
const BODY25_TO_18 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
/** The reference points the v2 pre-processing fits on (nose, neck, shoulders, hips, legs, eyes, ears). */
export const ALIGNMENT_KEYPOINTS = [0, 1, 2, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17] as const;
/** DWPose's detection threshold (a body point with a lower score is not drawn and not an anchor). */
export const KEYPOINT_THRESHOLD = 0.3;

function triples(v: unknown, what: string, source: string): number[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x)) || v.length % 3 !== 0) {
    throw new Error(`${source}: ${what} must be a flat array of [x, y, confidence] numbers, found ${JSON.stringify(v).slice(0, 80)}`);
  }
  return v as number[];
}

/** Parse one OpenPose JSON frame object; `size` is the source pixel size when the file does not say it. */
export function parseOpenPoseFrame(json: unknown, source: string, size?: { width: number; height: number }): PoseFrame {
  if (json === null || typeof json !== 'object' || !Array.isArray((json as { people?: unknown }).people)) {
    throw new Error(`${source}: not an OpenPose keypoints frame (expected an object with a "people" array)`);
  }
  const o = json as { people: unknown[]; canvas_width?: unknown; canvas_height?: unknown };
  const raw = o.people.map((p, i) => {
    const q = (p ?? {}) as Record<string, unknown>;
    return {
      body: triples(q.pose_keypoints_2d, `people[${i}].pose_keypoints_2d`, source),
      face: triples(q.face_keypoints_2d, `people[${i}].face_keypoints_2d`, source),
      left: triples(q.hand_left_keypoints_2d, `people[${i}].hand_left_keypoints_2d`, source),
      right: triples(q.hand_right_keypoints_2d, `people[${i}].hand_right_keypoints_2d`, source),
    };
  });
  const all = raw.flatMap((p) => [...p.body, ...p.face, ...p.left, ...p.right]).filter((_, i) => i % 3 !== 2);
  const canvas = typeof o.canvas_width === 'number' && typeof o.canvas_height === 'number' ? { width: o.canvas_width, height: o.canvas_height } : undefined;
  const normalised = !canvas && all.every((v) => v <= 1.0001);
  const dims = canvas ?? size;
  if (!normalised && !dims) {
    throw new Error(`${source}: pixel coordinates without a frame size: the file has no canvas_width/canvas_height; give the size the keypoints were measured in (--pose-size WxH)`);
  }
  const W = normalised ? (dims?.width ?? 1) : dims!.width, H = normalised ? (dims?.height ?? 1) : dims!.height;
  const sx = normalised ? 1 : 1 / W, sy = normalised ? 1 : 1 / H;
  const points = (t: number[], n: number, pick?: readonly number[]): [Float64Array, Float64Array] => {
    if (t.length === 0) return [new Float64Array(0), new Float64Array(0)];
    const count = t.length / 3;
    const idx = pick ?? Array.from({ length: n }, (_, i) => i);
    if (count < (pick ? Math.max(...pick) + 1 : n)) throw new Error(`${source}: expected at least ${pick ? 25 : n} keypoints, found ${count}`);
    const xy = new Float64Array(2 * idx.length), c = new Float64Array(idx.length);
    idx.forEach((k, i) => { xy[2 * i] = t[3 * k]! * sx; xy[2 * i + 1] = t[3 * k + 1]! * sy; c[i] = t[3 * k + 2]!; });
    return [xy, c];
  };
  const people = raw.map((p): PosePerson => {
    const n = p.body.length / 3;
    if (n !== 0 && n !== 18 && n !== 25) throw new Error(`${source}: pose_keypoints_2d has ${n} points, expected 18 (COCO) or 25 (BODY_25)`);
    const [body, bodyScore] = n === 25 ? points(p.body, 18, BODY25_TO_18) : n === 18 ? points(p.body, 18) : [new Float64Array(36), new Float64Array(18)];
    const [face, faceScore] = p.face.length > 0 ? points(p.face, 68) : [new Float64Array(0), new Float64Array(0)];
    const [l, ls] = p.left.length > 0 ? points(p.left, 21) : [new Float64Array(0), new Float64Array(0)];
    const [r, rs] = p.right.length > 0 ? points(p.right, 21) : [new Float64Array(0), new Float64Array(0)];
    return { body, bodyScore, face, faceScore, hands: [l, r], handScores: [ls, rs] };
  });
  return { width: W, height: H, people };
}

/** Frames from a parsed JSON document: one frame, an array of frames, or { "frames": [...] }. */
export function parseOpenPoseDocument(json: unknown, source: string, size?: { width: number; height: number }): PoseFrame[] {
  const list = Array.isArray(json) ? json : (json && typeof json === 'object' && Array.isArray((json as { frames?: unknown }).frames))
    ? (json as { frames: unknown[] }).frames : [json];
  return list.map((f, i) => parseOpenPoseFrame(f, list.length > 1 ? `${source} frame ${i}` : source, size));
}

export interface PoseAlignment {
  a: [number, number];
  b: [number, number];
  /** Points the fit used. */
  points: number;
}

/**
 * The v2 pre-processing's linear map from the driving frames to the reference pose (see the header).
 * `refSize`: the reference image's (= output) pixel size.
 */
export function fitPoseAlignment(reference: PoseFrame, frames: readonly PoseFrame[], refSize: { width: number; height: number }): PoseAlignment {
  const ref = reference.people[0];
  if (!ref) throw new Error('pose alignment: the reference pose has no person');
  const ids = ALIGNMENT_KEYPOINTS.filter((i) => ref.bodyScore[i]! > KEYPOINT_THRESHOLD);
  if (ids.length === 0) throw new Error('pose alignment: no reference body keypoint (nose, neck, shoulders, hips, legs, eyes, ears) is detected');
  const single = frames.filter((f) => f.people.length === 1);
  if (single.length === 0) throw new Error('pose alignment: no driving frame has exactly one person (the fit uses single-person frames, as the v2 pre-processing does)');
  const xs: number[] = [], ys: number[] = [], rx: number[] = [], ry: number[] = [];
  for (const f of single) {
    const p = f.people[0]!;
    for (const i of ids) {
      if (!(p.bodyScore[i]! > 0)) continue;
      xs.push(p.body[2 * i]!); ys.push(p.body[2 * i + 1]!);
      rx.push(ref.body[2 * i]!); ry.push(ref.body[2 * i + 1]!);
    }
  }
  if (ys.length < 2) throw new Error(`pose alignment: only ${ys.length} matching keypoints in the driving frames; at least 2 are needed`);
  // np.polyfit(y, y_ref, 1): least squares slope and intercept.
  const n = ys.length;
  const my = ys.reduce((s, v) => s + v, 0) / n, mr = ry.reduce((s, v) => s + v, 0) / n;
  let sxy = 0, sxx = 0;
  for (let k = 0; k < n; k++) { sxy += (ys[k]! - my) * (ry[k]! - mr); sxx += (ys[k]! - my) ** 2; }
  if (sxx === 0) throw new Error('pose alignment: the driving keypoints have no vertical spread; cannot fit a scale');
  const ay = sxy / sxx, by = mr - ay * my;
  const { width: fw, height: fh } = single[0]!;
  const ax = ay / (fh / fw / refSize.height * refSize.width);
  const bx = rx.reduce((s, v, k) => s + v - xs[k]! * ax, 0) / n;
  return { a: [ax, ay], b: [bx, by], points: n };
}

/** p' = p a + b on every body, face and hand point (confidences unchanged). */
export function applyPoseAlignment(frame: PoseFrame, al: PoseAlignment): PoseFrame {
  const map = (xy: Float64Array) => xy.map((v, i) => v * al.a[i % 2]! + al.b[i % 2]!);
  return {
    width: frame.width, height: frame.height,
    people: frame.people.map((p) => ({
      ...p, body: map(p.body), face: map(p.face), hands: [map(p.hands[0]), map(p.hands[1])],
    })),
  };
}
