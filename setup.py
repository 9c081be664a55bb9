from setuptools import find_packages, setup

setup(
    name="npflows",
    version="0.1.0",
    description="Discrete normalizing flows on a NumPy/CuPy engine with hand-written, audited gradients",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(
        include=["npflows", "npflows.*", "layers", "layers.*", "runners", "runners.*"]
    ),
    install_requires=[
        "numpy>=1.24",
        "h5py>=3.8",
        "mpi4py>=3.1",
        "mpich",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "constriction>=0.5,<0.6",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80", "ruff==0.17.6"],
        # one CuPy wheel per CUDA major version (README, "GPU"): the lent GPU machine has CUDA 13
        "gpu": ["cupy-cuda13x"],
        "gpu-cuda13": ["cupy-cuda13x"],
        "gpu-cuda12": ["cupy-cuda12x"],
        "mutation": ["mutmut==3.8.1"],  # docs/reliability.md#mutation-testing
    },
    entry_points={"console_scripts": ["npflows=runners.cli:main"]},
)
