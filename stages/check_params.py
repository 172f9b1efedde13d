"""check_params: the whole params file checked before any other stage runs.

DVC deletes a stage's outputs just before it runs the stage, so a stage that refuses a wrong
value has already lost its previous outputs. This stage runs first (every other stage depends
on its output) and reads nothing but params.yaml (and asks the tracking store whether it
answers), so a wrong value stops `dvc repro` here, with every earlier result intact. In paper/
it also checks that dvc.yaml's vars: (the networks its stages run over) are params.yaml's rows x
criteria. Its output's bytes never change: a change that passes re-runs only the stages that
read the changed keys.
"""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

from pathlib import Path

from prunelab import config, pipeline, tracking

PASSED = "params.yaml passed stages/check_params.py\n"


def main() -> None:
    pipeline.no_arguments(__doc__)
    params = config.load_any("params.yaml")
    if config.is_paper(params):
        config.check_paper_dvc_yaml(params, "dvc.yaml")
    # every stage logs there: a dead server or a store MLflow cannot open stops them all, here
    tracking.check_store(params["tracking"]["uri"], open_store=True)
    results = params["paths"]["results"]
    pipeline.write_text(Path(results) / "params_check.txt", PASSED)


if __name__ == "__main__":
    config.run_stage(main)
