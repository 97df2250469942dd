"""The parity oracle: the stock VPA recommender's own Go packages, run on usage samples."""

from tests.oracle.runner import OracleError, build_oracle, case_from_frame, run_oracle

__all__ = ["OracleError", "build_oracle", "case_from_frame", "run_oracle"]
