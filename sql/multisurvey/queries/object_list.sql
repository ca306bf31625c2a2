-- The multi-survey object list: each object of each survey (ZTF: sid 0, LSST DIA objects: sid 1, LSST
-- solar-system objects: sid 2) with its probabilities from one version of one classifier, or one row of
-- NULLs where it has none. The survey's own columns come from ztf_object (sid 0) or lsst_dia_object
-- (sid 1) and are NULL for the other surveys. dbp filters, sorts and pages the output columns:
--   db.query("object_list", {"classifier": "stamp_classifier_rubin", "ranking": 1, "sid": 1}).paginate(
--       {"class_name": "SN", "probability": {"$gte": 0.5}, "n_det": {"$gte": 2}}, sort=[("probability", -1)])
-- classifier: the classifier's name (classifier.classifier_name); ranking: 1 for each object's top class,
-- or null for every class; sid (optional): one survey's objects only, or null (the default) for all;
-- version (optional): the classifier's version (classifier.classifier_version), or null (the default)
-- for each object's greatest version of that classifier (compared as text, code point by code point), so
-- that no object is listed twice.
-- key: oid, sid, classifier_id, class_id
-- not null: oid, sid, tid, meanra, meandec, firstmjd, lastmjd, deltamjd, n_det, n_forced, n_non_det
-- optional: sid, version
-- params: classifier text, ranking integer, sid integer, version text
-- position: meanra, meandec
SELECT o.oid, o.sid, o.tid, o.meanra, o.meandec, o.sigmara, o.sigmadec, o.firstmjd, o.lastmjd, o.deltamjd,
       o.n_det, o.n_forced, o.n_non_det,
       z.corrected, z.stellar, z.ndethist, l."nDiaSources",
       p.classifier_id, c.classifier_name, c.classifier_version, p.class_id, t.class_name, p.probability,
       p.ranking
FROM object AS o
LEFT JOIN ztf_object AS z ON o.sid = 0 AND z.oid = o.oid
LEFT JOIN lsst_dia_object AS l ON o.sid = 1 AND l.oid = o.oid
LEFT JOIN (probability AS p
           JOIN classifier AS c ON c.classifier_id = p.classifier_id
           LEFT JOIN taxonomy AS t ON t.class_id = p.class_id)
       ON p.oid = o.oid
      AND p.sid = o.sid
      AND c.classifier_name = %(classifier)s
      AND c.classifier_version = COALESCE(%(version)s::text, (
              SELECT max(vc.classifier_version COLLATE "C")
              FROM probability AS v JOIN classifier AS vc ON vc.classifier_id = v.classifier_id
              WHERE v.oid = o.oid AND v.sid = o.sid AND vc.classifier_name = %(classifier)s))
      AND (p.ranking = %(ranking)s::numeric OR %(ranking)s::numeric IS NULL)
WHERE o.sid = %(sid)s::numeric OR %(sid)s::numeric IS NULL
