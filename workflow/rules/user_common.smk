# Settings and input functions of the user-model rules (workflow/rules/user.smk): the study's
# `user_models`, each resolved by vaegaps.user_config (torch-free, as the Snakefile needs).
from vaegaps.user_config import estimators as user_estimators, user_models  # torch-free

with one_line(VERBOSE):  # a user model's bad entry or missing file: one line (common.smk)
    USER = user_models(config)
if USER:  # results/config.resolved.yaml records each user model's settings, defaults filled
    RESOLVED["user_models"] = USER
UDIR = f"{RES}/user/{{name}}"
USER_OUTPUTS = [f"{RES}/user_table.csv", f"{RES}/user_refinement.csv"] + [
    f"{RES}/user/{n}/gaps.{ext}" for n in USER for ext in ("png", "pdf")
]
if USER:
    if not config["datasets"]:  # a study of user models alone: no built-in dataset to run
        ALL_OUTPUTS.clear()
    ALL_OUTPUTS.extend(USER_OUTPUTS)


wildcard_constraints:
    name="[A-Za-z0-9_]+",
