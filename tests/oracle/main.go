// Command oracle runs the stock VPA recommender's own model and logic packages
// (k8s.io/autoscaler/vertical-pod-autoscaler v1.7.3) on usage samples, so that
// another implementation can be compared with it. See README.md for the protocol.
//
//	oracle recommend              JSON cases on stdin, recommendations on stdout
//	oracle bench --input FILE     time upstream histogram ingestion of float64 triples
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  oracle recommend            read {"cases": [...]} on stdin, print recommendations on stdout
  oracle bench --input FILE   time the ingestion of little-endian float64 triples
                              (t_unix_seconds, cpu_cores, memory_bytes) into upstream histograms
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "recommend":
		if len(args) != 1 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = recommendCommand(stdin, stdout)
	case "bench":
		flags := flag.NewFlagSet("bench", flag.ContinueOnError)
		flags.SetOutput(stderr)
		input := flags.String("input", "", "file of little-endian float64 triples")
		if flags.Parse(args[1:]) != nil || *input == "" || flags.NArg() != 0 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = benchCommand(*input, stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "oracle: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "oracle %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
