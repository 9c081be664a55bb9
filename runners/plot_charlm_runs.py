"""Plot charlm runs from the command line (the figures of docs/results.md, PTB study):

python -m runners.plot_charlm_runs OUT.png LABEL=RUN_DIR ...     bpc against training time
python -m runners.plot_charlm_runs --flows OUT.png N=RUN_DIR ...  bpc against the number of flows
"""

import sys

from .charlm_plots import plot_bpc_against_flows, plot_bpc_curves


def main(argv):
    if argv[0] == "--flows":
        plot_bpc_against_flows(
            argv[1],
            {int(key): value for key, value in (item.split("=", 1) for item in argv[2:])},
        )
    else:
        plot_bpc_curves(argv[0], dict(argument.split("=", 1) for argument in argv[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
