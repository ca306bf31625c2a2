-- The alerts API object list (GET /objects): each object with its probabilities from one version of one
-- classifier, or one row of NULLs where it has none. dbp filters, sorts and pages the output columns:
--   db.query("object_list", {"classifier": "lc_classifier", "ranking": 1}).paginate(
--       {"class_name": "SN", "probability": {"$gte": 0.5}, "ndet": {"$gte": 2}}, sort=[("probability", -1)])
-- classifier: the classifier's name; ranking: 1 for each object's top class, or null for every class;
-- version (optional): the classifier's version, or null (the default) for each object's greatest version of
-- that classifier (compared as text, code point by code point), so that no object is listed twice.
-- key: oid, classifier_version, class_name
-- not null: oid
-- optional: version
-- params: classifier text, ranking integer, version text
-- position: meanra, meandec
SELECT o.oid, o.ndet, o.firstmjd, o.lastmjd, o.meanra, o.meandec, o.sigmara, o.sigmadec, o.corrected, o.stellar,
       p.classifier_name, p.classifier_version, p.class_name, p.probability, p.ranking
FROM object AS o
LEFT JOIN probability AS p
       ON p.oid = o.oid
      AND p.classifier_name = %(classifier)s
      AND p.classifier_version = COALESCE(%(version)s::text, (
              SELECT max(v.classifier_version COLLATE "C") FROM probability AS v
              WHERE v.oid = o.oid AND v.classifier_name = %(classifier)s))
      AND (p.ranking = %(ranking)s::integer OR %(ranking)s::integer IS NULL)
