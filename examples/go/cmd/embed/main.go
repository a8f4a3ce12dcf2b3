// Command embed is the README's Go embedding example: store one payload
// (a POST /v1/aggregate body read from the file named on the command line)
// and print the customer's stats.
package main

import (
	"fmt"
	"log"
	"os"

	receiver "loopgain.dev/receiver-go"
)

func main() {
	rcv, err := receiver.Open(receiver.Options{DBPath: "telemetry.db"})
	check(err)
	defer rcv.Close()
	customer, err := rcv.CreateCustomer("Acme", "") // the token is shown once
	check(err)
	body, err := os.ReadFile(os.Args[1])
	check(err)
	_, err = rcv.Ingest("Bearer "+customer.Token, body) // *receiver.Error: Code, Pointer
	check(err)
	stats, err := rcv.StatsJSON(customer.CustomerID)
	check(err)
	fmt.Println(string(stats))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
