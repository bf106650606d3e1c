from setuptools import find_packages
from setuptools import setup

setup(
    name="keras-sb",
    version="0.1.0",
    description="Selective-Backprop for Keras 3: backpropagate only the "
    "examples with the highest loss.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_sb", "keras_sb.*"]),
    py_modules=["keras_sb_cli"],
    python_requires=">=3.11",
    install_requires=["keras>=3.15,<3.16", "numpy"],
    entry_points={"console_scripts": ["keras-sb=keras_sb_cli:main"]},
    extras_require={
        # TensorFlow: the CPU build on machines without a GPU.
        "cpu": ["tensorflow-cpu>=2.21"],
        "gpu": ["tensorflow[and-cuda]>=2.21"],
        # JAX: KERAS_BACKEND=jax (use jax[cuda12] or jax[cuda13] on GPUs).
        "jax": ["jax"],
        "demo": ["scikit-learn"],
        "data": ["tensorflow-datasets"],
        # `keras_sb.SelectionSummaries` (with TensorFlow's `tf.summary`).
        "tensorboard": ["tensorboard"],
        "test": ["pytest", "scikit-learn", "tensorflow-datasets", "jax",
                 "pillow", "tensorboard"],
        "bench": ["matplotlib", "pillow", "tensorflow-datasets"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
