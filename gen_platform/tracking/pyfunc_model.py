"""MLflow "model from code" entry point: MLflow runs this file to build the pyfunc, so nothing is pickled."""

from mlflow.models import set_model

from gen_platform.tracking.model_io import GeneratorPyfunc

set_model(GeneratorPyfunc())
